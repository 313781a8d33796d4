"""The archiver as a Lambda function: handler, failed batches, a stalled function, redrive."""
