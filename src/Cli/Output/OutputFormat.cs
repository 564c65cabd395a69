using System.CommandLine;

namespace DaemonEye.Cli.Output;

/// <summary>How a list or show command prints: a table (default), a wider table, or JSON.</summary>
internal enum OutputFormat
{
    Table,
    Wide,
    Json,
}

/// <summary>
/// <c>-o|--output table|wide|json</c> and its alias <c>--json</c>, added to a command together.
/// </summary>
internal sealed class OutputOptions
{
    private readonly Option<string> _output;
    private readonly Option<bool> _json;

    private OutputOptions(Option<string> output, Option<bool> json)
    {
        _output = output;
        _json = json;
    }

    public static OutputOptions AddTo(Command command, string jsonDescription)
    {
        var output = new Option<string>("--output", "-o")
        {
            Description = $"table (default), wide (more columns, absolute times), or json ({jsonDescription})",
            DefaultValueFactory = _ => "table",
        };
        output.AcceptOnlyFromAmong("table", "wide", "json");
        var json = new Option<bool>("--json") { Description = $"Same as -o json: {jsonDescription}" };
        command.Options.Add(output);
        command.Options.Add(json);
        return new OutputOptions(output, json);
    }

    public OutputFormat Get(ParseResult parse) => parse.GetValue(_json)
        ? OutputFormat.Json
        : parse.GetValue(_output) switch
        {
            "json" => OutputFormat.Json,
            "wide" => OutputFormat.Wide,
            _ => OutputFormat.Table,
        };
}
