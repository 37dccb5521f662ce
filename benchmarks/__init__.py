"""Benchmarks of idexpo_jax against the lime, shap and captum packages (`make bench`)."""
