# Parameters of the model
rate = 0.8  # growth rate r per hour
capacity: float = 1.6  # carrying capacity K (OD600)
hours = 24  # length of the experiment
strain = 'E. coli K-12'  # strain shown in the title
log_scale = False  # plot the y axis on a log scale
replicates = [1, 2, 3]  # replicate ids to simulate