from wfbatch.cli.main import main

main()
