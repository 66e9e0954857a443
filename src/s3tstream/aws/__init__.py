"""Talking to AWS: the client factory, error translation, retries and waits, IAM/LF policy documents."""
