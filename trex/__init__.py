"""T-REX reward learning on Procgen: ranked demonstrations, snippet pairs, the reward network, its trainer
and its held-out evaluation (Brown et al., 2019, "Extrapolating Beyond Suboptimal Demonstrations")."""
