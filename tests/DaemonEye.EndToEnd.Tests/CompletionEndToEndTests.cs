using System.Diagnostics;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// <c>eval "$(daemoneye-cli completion bash)"</c> in a real bash, with the real program on PATH:
/// the completion function the script registers asks daemoneye-cli and offers its answer.
/// </summary>
public sealed class CompletionEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Theory]
    [InlineData("daemoneye-cli collectors lis", "list")]
    [InlineData("daemoneye-cli streams --o", "--output")]
    [InlineData("daemoneye-cli collectors list -o w", "wide")]
    public async Task The_bash_script_completes_from_the_program_itself(string line, string expected)
    {
        var bin = Directory.CreateTempSubdirectory("de-completion-");
        try
        {
            // daemoneye-cli on PATH, as deploy/install.sh puts it there.
            var launcher = Path.Combine(bin.FullName, "daemoneye-cli");
            await File.WriteAllTextAsync(launcher, $"#!/bin/sh\nexec dotnet '{Paths.CliDll}' \"$@\"\n");
            File.SetUnixFileMode(launcher, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            var script = $$"""
                eval "$(daemoneye-cli completion bash)" || exit 10
                complete -p daemoneye-cli || exit 11
                COMP_LINE='{{line}}'
                COMP_POINT=${#COMP_LINE}
                read -r -a COMP_WORDS <<< "$COMP_LINE"
                COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
                _daemoneye_cli_complete
                printf 'reply:%s\n' "${COMPREPLY[@]}"
                """;
            var start = new ProcessStartInfo("bash", ["--norc", "--noprofile", "-c", script])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
                WorkingDirectory = bin.FullName,
            };
            start.Environment["PATH"] = bin.FullName + ":" + Environment.GetEnvironmentVariable("PATH");
            using var bash = Process.Start(start)!;
            var stdout = bash.StandardOutput.ReadToEndAsync();
            var stderr = bash.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(Patience);
            await bash.WaitForExitAsync(timeout.Token);

            Assert.True(bash.ExitCode == 0, $"bash exited {bash.ExitCode}: {await stderr}\n{await stdout}");
            var output = (await stdout).Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Contains("complete -o default -F _daemoneye_cli_complete daemoneye-cli", output);
            Assert.Contains("reply:" + expected, output);
        }
        finally
        {
            bin.Delete(recursive: true);
        }
    }
}
