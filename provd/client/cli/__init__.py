"""The admin commands of the `provd` command line: thin wrappers over the generated
Connect clients (`files`, `jobs`, `daemons`, `quota`, `version`)."""
