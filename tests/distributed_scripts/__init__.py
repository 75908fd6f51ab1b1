"""Small programs that tests/test_distributed.py runs as several processes (torchrun or plain)."""
