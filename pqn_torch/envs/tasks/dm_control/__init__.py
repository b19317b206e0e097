"""The 25 DeepMind Control Suite tasks of MuJoCo Playground 0.2.0, one file per domain."""
