"""Records -> model features: encoding, the features cache, corpora, packing and collators."""
