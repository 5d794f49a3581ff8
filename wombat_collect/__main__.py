from wombat_collect.cli import main

main()
