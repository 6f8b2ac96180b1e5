"""Where the report's four modules run and how they share the accelerator (report §10): for
now, offloading a module's tensors between phases; Ray and torch.distributed placement will
live here too."""
