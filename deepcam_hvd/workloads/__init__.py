"""What is specific to each benchmark workload lives in one module here (DeepCAM today)."""
