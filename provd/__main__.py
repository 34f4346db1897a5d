from provd.cli import main

main(prog_name="provd")
