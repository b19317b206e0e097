"""MuJoCo Playground 0.2.0's manipulation tasks, one file per robot family."""
