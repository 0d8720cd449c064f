"""hotpath's client side: the command line, the attaching agent, shipping windows to the server."""
