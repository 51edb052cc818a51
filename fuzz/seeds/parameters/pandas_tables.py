n_genes = 12  # number of genes to show
seed = 7