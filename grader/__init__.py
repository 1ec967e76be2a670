"""The grader: reads exercises and submissions, checks answers against the reference, reports."""
