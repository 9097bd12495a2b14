"""What pipeline authors write with: Pipeline, the step decorator, Progress."""
