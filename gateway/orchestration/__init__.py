"""Running the selected agents: calls, hand-offs between them, and the final answer."""
