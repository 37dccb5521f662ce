"""The ID-ExpO study: all explainers against all baselines, validation-only model selection."""
