"""The outbound spool beneath delivery: the queue files (queue.py, the only code that touches
them) and the delivery status notifications composed about their entries (bounce.py)."""
