"""Reports built from run records: paper-table plans, tables, plots and the paper's reference numbers."""
