"""`sae experiment`: a grid of models trained, exported, served and evaluated, and its report."""
