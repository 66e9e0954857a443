from s3tstream.cli.app import main

main()
