"""Training jobs: state machine, submit / get / cancel / execute."""
