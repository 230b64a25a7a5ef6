"""What a batch would cost and take, without a paid request."""
