from trioproxy.cli import main

main()
