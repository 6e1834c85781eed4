from mmstd.cli import main

main()
