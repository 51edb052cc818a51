doses = [0.1, 1.0, 10.0, 100.0]
ec50 = 3.5  # half maximal effective concentration (uM)
hill = 1.2