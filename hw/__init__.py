"""Stage 2 of the pipeline: integer hardware semantics (golden kernels, the
fixed-point network folded from a trained model), later graph passes, folding
and cost models."""
