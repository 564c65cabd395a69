using System.CommandLine;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>completion bash|zsh</c>: a script that asks daemoneye-cli itself for completions through
/// System.CommandLine's <c>[suggest:POSITION]</c> directive (no dotnet-suggest, no network):
/// <c>eval "$(daemoneye-cli completion bash)"</c> in ~/.bashrc, or the zsh form in ~/.zshrc.
/// </summary>
internal static class CompletionCommand
{
    // The words typed after the program name, up to the cursor, and the cursor's position in them.
    private const string Bash = """
        # daemoneye-cli completion for bash: eval "$(daemoneye-cli completion bash)"
        _daemoneye_cli_complete() {
            local line="${COMP_LINE:0:COMP_POINT}"
            local rest="${line#*[[:space:]]}"
            [[ "$rest" == "$line" ]] && rest=""
            local IFS=$'\n'
            COMPREPLY=($("${COMP_WORDS[0]}" "[suggest:${#rest}]" "$rest" 2>/dev/null))
        }
        complete -o default -F _daemoneye_cli_complete daemoneye-cli
        """;

    private const string Zsh = """
        # daemoneye-cli completion for zsh: eval "$(daemoneye-cli completion zsh)" (after compinit)
        _daemoneye_cli() {
            local line="${BUFFER[1,CURSOR]}"
            local rest="${line#*[[:space:]]}"
            [[ "$rest" == "$line" ]] && rest=""
            local -a completions
            completions=("${(@f)$(${words[1]} "[suggest:${#rest}]" "$rest" 2>/dev/null)}")
            compadd -a completions
        }
        compdef _daemoneye_cli daemoneye-cli
        """;

    public static Command Build(CliContext context)
    {
        var shell = new Argument<string>("shell") { Description = "bash or zsh" };
        shell.AcceptOnlyFromAmong("bash", "zsh");
        var command = new Command("completion", "Print a shell completion script: eval \"$(daemoneye-cli completion bash)\" (or zsh)");
        command.Arguments.Add(shell);
        command.SetAction(parse =>
        {
            context.Output.WriteLine(parse.GetValue(shell) == "zsh" ? Zsh : Bash);
            return CliApplication.Ok;
        });
        return command;
    }
}
