"""The serving side: the tritonserver process and its watchdog (``sae.serving.triton``), the served sets, the
``sae bench`` library that measures them (``sae.serving.bench``) and the explorer app."""
