from invreg.experiments.runner import main

main()
