"""The archiver as an AWS Lambda function: its handlers, failed batches, stalls, redrive."""
