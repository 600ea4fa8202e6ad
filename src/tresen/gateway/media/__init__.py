"""The business's media: uploads, links fetched safely, and customers' attachments."""
