"""`provd daemon`: a reference provisioner daemon, in trio, with the `echo` provisioner."""
