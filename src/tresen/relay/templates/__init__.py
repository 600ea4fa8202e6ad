"""Message templates: submission, the operator's review and signature, quality."""
