fold_change: float = 2.0  # minimum absolute fold change
p_value: float = 0.05  # significance threshold
label = "treated vs control"  # comparison label
show_table = True
genes: list[str] = ['TP53', 'MYC']  # genes to highlight
max_points = 2_000