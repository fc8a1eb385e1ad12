"""Weight sync from the learner to the generators, versioned, with a timeout on every transfer."""
