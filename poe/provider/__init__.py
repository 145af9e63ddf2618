"""The provider's side of the flow: the run loop, sealing and signing epochs, answering challenges."""
