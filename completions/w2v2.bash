_w2v2_completion() {
    local IFS=$'
'
    COMPREPLY=( $( env COMP_WORDS="${COMP_WORDS[*]}" \
                   COMP_CWORD=$COMP_CWORD \
                   _W2V2_COMPLETE=complete_bash $1 ) )
    return 0
}

complete -o default -F _w2v2_completion w2v2
