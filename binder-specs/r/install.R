install.packages("jsonlite")
BiocManager::install("Biobase")
library(jsonlite)
