from poe.cli import main

main(prog_name="poe")
