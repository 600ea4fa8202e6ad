"""The team inbox: the business's people answer its customers in the browser."""
