from provd.cli import main

main()
