#compdef w2v2

_w2v2_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _W2V2_COMPLETE=complete_zsh w2v2)
}

compdef _w2v2_completion w2v2
