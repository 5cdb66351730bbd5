"""Analytic cost counting (paper-convention GFLOPs and true FLOPs) of the vision encoder, the text
encoder and ITM re-ranking, derived from the architecture and the reducers' self-description."""
