from hotpath.cli.main import main

main()
