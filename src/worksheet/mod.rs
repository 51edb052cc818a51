//! Worksheets: the notebook model, parameters, and rendering without code.
