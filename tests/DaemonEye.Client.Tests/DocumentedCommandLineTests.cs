using System.Text;
using System.Text.RegularExpressions;
using DaemonEye.Cli;
using DaemonEye.Cli.Output;

namespace DaemonEye.Client.Tests;

/// <summary>
/// Every daemoneye-cli command line the README and docs/*.md (but the dated journal) show (in shell
/// code blocks and in inline code) parses with the CLI as it is: its commands, options and option values exist. A
/// renamed or removed option, or documentation of one that was never added, fails here.
/// </summary>
public sealed partial class DocumentedCommandLineTests
{
    /// <summary>The start of a command in a shell line: the line's start, or after a pipe, <c>&amp;&amp;</c>, <c>;</c> or <c>$(</c>; optionally a path before the name.</summary>
    [GeneratedRegex(@"(?:^\s*|\|\s*|&&\s*|;\s*|\$\()(?:[\w./-]*/)?daemoneye-cli(?=\s|$|\))")]
    private static partial Regex CommandStart();

    /// <summary>A shell comment: whitespace, then # and whitespace or the line's end.</summary>
    [GeneratedRegex(@"\s+#(\s.*)?$")]
    private static partial Regex Comment();

    [GeneratedRegex("`([^`\n]+)`")]
    private static partial Regex InlineCode();

    [GeneratedRegex(@"\[([^\[\]]*)\]")]
    private static partial Regex Optional();

    /// <summary>A placeholder in capitals: N, FILE, NAME, TYPE.</summary>
    [GeneratedRegex("^[A-Z][A-Z_-]*$")]
    private static partial Regex CapitalPlaceholder();

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "DaemonEye.Orleans.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"no DaemonEye.Orleans.sln above {AppContext.BaseDirectory}");
    }

    /// <summary>(file:line, the text after "daemoneye-cli") of every documented command line.</summary>
    internal static IEnumerable<(string Where, string Args)> DocumentedCommands()
    {
        var root = RepositoryRoot();
        // Not the benchmarks journal: it records the commands of dated runs as they were then.
        var files = new[] { Path.Combine(root, "README.md") }.Concat(Directory.GetFiles(Path.Combine(root, "docs"), "*.md")
            .Where(f => Path.GetFileName(f) != "benchmarks-journal.md").Order(StringComparer.Ordinal));
        foreach (var file in files)
        {
            var lines = File.ReadAllLines(file);
            var shell = false;
            var fenced = false;
            for (var i = 0; i < lines.Length; i++)
            {
                var line = lines[i];
                var where = $"{Path.GetRelativePath(root, file)}:{i + 1}";
                if (line.TrimStart().StartsWith("```", StringComparison.Ordinal))
                {
                    fenced = !fenced;
                    shell = fenced && line.Trim() is "```sh" or "```bash" or "```shell";
                    continue;
                }

                if (shell)
                {
                    foreach (var args in FromShell(line))
                    {
                        yield return (where, args);
                    }
                }
                else if (!fenced)
                {
                    foreach (Match code in InlineCode().Matches(line))
                    {
                        var text = code.Groups[1].Value;
                        if (CommandStart().Match(text) is { Success: true, Index: 0 } start)
                        {
                            yield return (where, Comment().Replace(text[start.Length..], string.Empty));
                        }
                    }
                }
            }
        }

        static IEnumerable<string> FromShell(string line)
        {
            foreach (Match start in CommandStart().Matches(line))
            {
                var rest = line[(start.Index + start.Length)..];
                var inSubshell = start.Value.StartsWith("$(", StringComparison.Ordinal);
                var end = inSubshell ? rest.IndexOf(')', StringComparison.Ordinal) : -1;
                rest = end >= 0 ? rest[..end] : rest;
                yield return Comment().Replace(rest, string.Empty);
            }
        }
    }

    /// <summary>
    /// The documented text as arguments: optional parts (<c>[-o json|wide]</c>) included,
    /// alternatives (<c>start|restart</c>) as their first, placeholders (<c>&lt;id&gt;</c>, <c>N</c>,
    /// <c>FILE</c>) as "1", quotes removed as a shell would.
    /// </summary>
    internal static string[] Arguments(string documented)
    {
        var text = documented;
        while (Optional().IsMatch(text))
        {
            text = Optional().Replace(text, m => m.Groups[1].Value);
        }

        var args = new List<string>();
        foreach (var (token, quoted) in ShellWords(text))
        {
            if (quoted)
            {
                args.Add(token.StartsWith('<') && token.EndsWith('>') ? "1" : token);
                continue;
            }

            var first = token.Split('|')[0];
            args.Add((first.StartsWith('<') && first.EndsWith('>')) || CapitalPlaceholder().IsMatch(first) ? "1" : first);
        }

        return [.. args];
    }

    private static IEnumerable<(string Token, bool Quoted)> ShellWords(string text)
    {
        var current = new StringBuilder();
        var quoted = false;
        var inToken = false;
        char? quote = null;
        foreach (var c in text)
        {
            if (quote is { } q)
            {
                if (c == q)
                {
                    quote = null;
                }
                else
                {
                    current.Append(c);
                }
            }
            else if (c is '\'' or '"')
            {
                quote = c;
                quoted = inToken = true;
            }
            else if (char.IsWhiteSpace(c))
            {
                if (inToken)
                {
                    yield return (current.ToString(), quoted);
                }

                current.Clear();
                quoted = inToken = false;
            }
            else
            {
                current.Append(c);
                inToken = true;
            }
        }

        if (inToken)
        {
            yield return (current.ToString(), quoted);
        }
    }

    [Fact]
    public void The_documents_show_daemoneye_cli_command_lines()
    {
        var commands = DocumentedCommands().ToList();

        // README's quick start and docs/operator.md's answer-time table are among them.
        Assert.Contains(commands, c => c.Where.StartsWith("README.md:", StringComparison.Ordinal) && c.Args.Trim() == "subscribe 'events.process.#'");
        Assert.Contains(commands, c => c.Where.StartsWith("docs/operator.md:", StringComparison.Ordinal) && c.Args.Trim() == "task run no.such.type");
        Assert.True(commands.Count >= 40, $"{commands.Count} command lines found");
    }

    [Theory]
    [InlineData("collectors list [-o json|wide] [--watch]", new[] { "collectors", "list", "-o", "json", "--watch" })]
    [InlineData("collectors start|restart|health example", new[] { "collectors", "start", "example" })]
    [InlineData("logs <collector> [-n N] [--follow]", new[] { "logs", "1", "-n", "1", "--follow" })]
    [InlineData("topic match 'events.#' events", new[] { "topic", "match", "events.#", "events" })]
    [InlineData("subscribe '<pattern>'", new[] { "subscribe", "1" })]
    public void Documented_text_becomes_arguments(string documented, string[] expected) =>
        Assert.Equal(expected, Arguments(documented));

    [Fact]
    public void Every_documented_command_line_parses()
    {
        using var output = new StringWriter();
        var root = CliApplication.Build(Terminal.Create(output), TextWriter.Null);
        var problems = new List<string>();
        foreach (var (where, documented) in DocumentedCommands())
        {
            var args = Arguments(documented);
            if (args.Length == 0)
            {
                continue;
            }

            // A command group, or a command named without its required argument or option
            // ("`daemoneye-cli topic`", "`daemoneye-cli bench rpc`" in prose), names what exists;
            // any other error (an unknown command, option or value) is a mismatch.
            var errors = root.Parse(args).Errors.Where(e => !e.Message.Contains("required", StringComparison.OrdinalIgnoreCase)).ToList();
            if (errors.Count > 0)
            {
                problems.Add($"{where}: daemoneye-cli {documented.Trim()} -> [{string.Join(' ', args)}]: {string.Join("; ", errors.Select(e => e.Message))}");
            }
        }

        Assert.True(problems.Count == 0, string.Join('\n', problems));
    }
}
