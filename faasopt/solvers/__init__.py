"""The mathematics: losses, local solvers and consensus ADMM. Pure numpy/scipy, no I/O."""
