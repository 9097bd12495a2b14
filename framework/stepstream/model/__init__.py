"""The data: execution records and events as they travel, and how events fold into records."""
