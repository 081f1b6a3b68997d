"""Execution: the scheduler that runs instances, and the Prefect flow that hosts it."""
