"""MuJoCo Playground 0.2.0's locomotion tasks, one file per robot family."""
